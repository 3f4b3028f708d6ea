"""Drives the ready gateway (the `switchboard` binary, demo providers, port 0) with the official
`openai` Python package.

Run by .ci/run in its own venv:
    python tests/python/test_openai_sdk.py [path/to/gateway-binary]
"""

import base64
import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_process import PNG_HEX, start_gateway  # noqa: E402

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "google/gemini-2.5-flash"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
# A 1x1 transparent PNG.
PNG = base64.b64encode(bytes.fromhex(PNG_HEX)).decode()

GATEWAY = None
BASE_URL = None


def client():
    return openai.OpenAI(api_key="unused", base_url=BASE_URL + "/v1", max_retries=0, timeout=20)


class Gateway(unittest.TestCase):
    def test_says_it_uses_demo_providers(self):
        self.assertIn("demo providers", STARTUP)

    def test_models_list(self):
        ids = [m.id for m in client().models.list().data]
        for m in MODELS:
            self.assertIn(m, ids)

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            client().chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "hi"}])
        self.assertIn("nobody/nothing", str(cm.exception))

    def test_malformed_json_is_400_and_server_keeps_serving(self):
        for body in [b"{not json", b'{"model": 5, "messages": []}', b'{"model":"fast","messages":[]}']:
            req = urllib.request.Request(
                BASE_URL + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
            )
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(req, timeout=10)
            self.assertEqual(cm.exception.code, 400)
            err = json.loads(cm.exception.read())["error"]
            self.assertEqual(err["type"], "invalid_request_error")
            self.assertTrue(err["message"])
        big = b'{"model":"fast","messages":[{"role":"user","content":"' + b"a" * (10 * 1024 * 1024) + b'"}]}'
        req = urllib.request.Request(BASE_URL + "/v1/chat/completions", data=big)
        try:
            urllib.request.urlopen(req, timeout=20)
            self.fail("10 MiB body accepted")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 413)
        except (ConnectionError, urllib.error.URLError):
            pass  # the server may close the connection after answering 413 mid-upload
        r = client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "still there?"}])
        self.assertTrue(r.choices[0].message.content)

    def test_bedrock_and_vertex_models_on_the_demo(self):
        for m in ["bedrock/claude-3-5-haiku", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4"]:
            with self.subTest(model=m):
                r = client().chat.completions.create(model=m, messages=[{"role": "user", "content": "hi there"}])
                self.assertEqual(r.model, m)
                self.assertIn("You said: hi there", r.choices[0].message.content)
        e = client().embeddings.create(model="bedrock/titan-embed-text-v2", input="hi", encoding_format="float")
        self.assertEqual(len(e.data[0].embedding), 1024)

    def test_alias(self):
        r = client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(r.model, "openai/gpt-4o-mini")


class PerModel(unittest.TestCase):
    def each(self):
        for m in MODELS:
            with self.subTest(model=m):
                yield m

    def test_chat_with_system_prompt(self):
        for m in self.each():
            r = client().chat.completions.create(
                model=m,
                messages=[
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Say hello to the tests"},
                ],
            )
            self.assertEqual(r.model, m)
            self.assertEqual(r.object, "chat.completion")
            c = r.choices[0]
            self.assertIn("hello to the tests", c.message.content)
            self.assertEqual(c.finish_reason, "stop")
            self.assertGreater(r.usage.prompt_tokens, 0)
            self.assertGreater(r.usage.completion_tokens, 0)
            self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_streaming(self):
        for m in self.each():
            chunks = list(
                client().chat.completions.create(
                    model=m, messages=[{"role": "user", "content": "stream me a greeting"}], stream=True
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            self.assertIn("stream me a greeting", text)
            self.assertEqual(len({c.id for c in chunks}), 1)
            self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            self.assertEqual(finish, ["stop"])
            self.assertTrue(all(c.usage is None for c in chunks), "usage chunk shown without include_usage")

    def test_streaming_usage_when_asked(self):
        for m in self.each():
            chunks = list(
                client().chat.completions.create(
                    model=m,
                    messages=[{"role": "user", "content": "count my tokens"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            last = chunks[-1]
            self.assertEqual(last.choices, [])
            self.assertGreater(last.usage.total_tokens, 0)

    def test_tool_call_and_follow_up(self):
        for m in self.each():
            msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
            r = client().chat.completions.create(model=m, messages=msgs, tools=[WEATHER_TOOL])
            c = r.choices[0]
            self.assertEqual(c.finish_reason, "tool_calls")
            call = c.message.tool_calls[0]
            self.assertEqual(call.function.name, "get_weather")
            self.assertIn("city", json.loads(call.function.arguments))
            self.assertTrue(call.id)
            msgs.append(c.message.model_dump(exclude_none=True))
            msgs.append({"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"})
            r2 = client().chat.completions.create(model=m, messages=msgs, tools=[WEATHER_TOOL])
            self.assertEqual(r2.choices[0].finish_reason, "stop")
            self.assertIn("18 degrees and sunny", r2.choices[0].message.content)

    def test_tool_call_streaming(self):
        for m in self.each():
            calls = {}
            finish = None
            for ch in client().chat.completions.create(
                model=m,
                messages=[{"role": "user", "content": "Weather in Rome?"}],
                tools=[WEATHER_TOOL],
                stream=True,
            ):
                if not ch.choices:
                    continue
                d = ch.choices[0].delta
                for tc in d.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function and tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function and tc.function.arguments:
                        slot["args"] += tc.function.arguments
                finish = ch.choices[0].finish_reason or finish
            self.assertEqual(finish, "tool_calls")
            self.assertTrue(calls)
            first = calls[min(calls)]
            self.assertEqual(first["name"], "get_weather")
            self.assertTrue(first["id"])
            self.assertIn("city", json.loads(first["args"]))

    def test_image_input(self):
        for m in self.each():
            r = client().chat.completions.create(
                model=m,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this image?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
                        ],
                    }
                ],
            )
            self.assertIn("1 image", r.choices[0].message.content)

    def test_max_tokens_gives_length(self):
        for m in self.each():
            r = client().chat.completions.create(
                model=m, messages=[{"role": "user", "content": "write a long story"}], max_tokens=3
            )
            self.assertEqual(r.choices[0].finish_reason, "length")
            self.assertLessEqual(r.usage.completion_tokens, 3)

    def test_stop_sequence(self):
        for m in self.each():
            r = client().chat.completions.create(
                model=m, messages=[{"role": "user", "content": "greet me"}], stop=["demo"]
            )
            self.assertEqual(r.choices[0].finish_reason, "stop")
            self.assertNotIn("demo", r.choices[0].message.content)


RESPONSES_WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class PerModelResponses(unittest.TestCase):
    """`client.responses` against /v1/responses, each provider kind behind it."""

    def each(self):
        for m in MODELS:
            with self.subTest(model=m):
                yield m

    def test_create(self):
        for m in self.each():
            r = client().responses.create(
                model=m, instructions="You are terse.", input="Say hello to the responses tests", metadata={"k": "v"}
            )
            self.assertTrue(r.id.startswith("resp_"))
            self.assertEqual(r.object, "response")
            self.assertEqual(r.status, "completed")
            self.assertEqual(r.model, m)
            self.assertIn("hello to the responses tests", r.output_text)
            self.assertEqual(r.metadata, {"k": "v"})
            self.assertGreater(r.usage.input_tokens, 0)
            self.assertGreater(r.usage.output_tokens, 0)
            self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens)
            self.assertGreater(r.usage.model_extra["cost"], 0)

    def test_stream_helper_and_raw_events(self):
        for m in self.each():
            with client().responses.stream(model=m, input="stream me a greeting") as stream:
                deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
                final = stream.get_final_response()
            self.assertEqual(final.status, "completed")
            self.assertIn("stream me a greeting", final.output_text)
            self.assertEqual("".join(deltas), final.output_text)
            events = list(client().responses.create(model=m, input="hi", stream=True))
            self.assertEqual([e.sequence_number for e in events], list(range(len(events))))
            self.assertEqual(events[0].type, "response.created")
            self.assertEqual(events[-1].type, "response.completed")

    def test_function_call_round_trip(self):
        for m in self.each():
            items = [{"role": "user", "content": "What's the weather in Paris?"}]
            with client().responses.stream(model=m, input=items, tools=[RESPONSES_WEATHER_TOOL]) as stream:
                r = stream.get_final_response()
            calls = [o for o in r.output if o.type == "function_call"]
            self.assertEqual(len(calls), 1, r)
            call = calls[0]
            self.assertEqual(call.name, "get_weather")
            self.assertIn("city", json.loads(call.arguments))
            items += [o.model_dump(exclude_none=True) for o in r.output]
            items.append({"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"})
            r2 = client().responses.create(model=m, input=items, tools=[RESPONSES_WEATHER_TOOL], store=False)
            self.assertEqual(r2.status, "completed")
            self.assertIn("18 degrees and sunny", r2.output_text)

    def test_max_output_tokens_is_incomplete(self):
        for m in self.each():
            r = client().responses.create(model=m, input="write a long story", max_output_tokens=3)
            self.assertEqual(r.status, "incomplete")
            self.assertEqual(r.incomplete_details.reason, "max_output_tokens")

    def test_stateful_requests_are_refused(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            client().responses.create(model="fast", input="hi", store=True)
        self.assertIn("store", str(cm.exception))
        with self.assertRaises(openai.BadRequestError):
            client().responses.create(model="fast", input="hi", previous_response_id="resp_1")
        with self.assertRaises(openai.BadRequestError):
            client().responses.create(model="fast", input="hi", tools=[{"type": "web_search"}])
        with self.assertRaises(openai.NotFoundError):
            client().responses.create(model="nobody/nothing", input="hi")


EMBEDDING_MODELS = {
    "openai/text-embedding-3-small": 1536,
    "azure/text-embedding-3-small": 1536,
    "google/gemini-embedding-001": 3072,
    "vertex/text-embedding-005": 768,
}


class Embeddings(unittest.TestCase):
    def test_float_and_base64(self):
        for m, dims in EMBEDDING_MODELS.items():
            floats = client().embeddings.create(model=m, input=["hello world", "bye"], encoding_format="float")
            self.assertEqual(len(floats.data), 2, m)
            self.assertEqual(len(floats.data[0].embedding), dims, m)
            self.assertGreater(floats.usage.prompt_tokens, 0, m)
            # The SDK asks for base64 by default and decodes it itself.
            decoded = client().embeddings.create(model=m, input=["hello world", "bye"])
            self.assertEqual(len(decoded.data[1].embedding), dims, m)
            for a, b in zip(floats.data[0].embedding, decoded.data[0].embedding):
                self.assertAlmostEqual(a, b, places=6)
            short = client().embeddings.create(model=m, input="x", dimensions=8)
            self.assertEqual(len(short.data[0].embedding), 8, m)

    def test_bad_input_is_400(self):
        with self.assertRaises(openai.BadRequestError):
            client().embeddings.create(model="openai/text-embedding-3-small", input=[])
        with self.assertRaises(openai.BadRequestError):
            client().embeddings.create(model="openai/gpt-4o-mini", input="x")

    def test_models_list_kind_and_dimensions(self):
        with urllib.request.urlopen(BASE_URL + "/v1/models", timeout=10) as r:
            data = {m["id"]: m for m in json.loads(r.read())["data"]}
        for m, dims in EMBEDDING_MODELS.items():
            self.assertEqual(data[m]["kind"], "embedding")
            self.assertEqual(data[m]["dimensions"], dims)


class Azure(unittest.TestCase):
    def test_chat_through_the_gateway_azure_upstream(self):
        r = client().chat.completions.create(
            model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "hi azure"}]
        )
        self.assertIn("demo azure provider", r.choices[0].message.content)
        chunks = list(
            client().chat.completions.create(
                model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        self.assertTrue(all(c.id for c in chunks))

    def test_content_filter_is_400(self):
        with self.assertRaises(openai.BadRequestError) as cm:
            client().chat.completions.create(
                model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "SB-FILTER-PROMPT"}]
            )
        self.assertEqual(cm.exception.code, "content_filter")

    def test_azure_sdk_speaks_to_the_demo_upstream(self):
        # The gateway's Azure upstream (the demo) must be what the official AzureOpenAI client
        # expects: deployment URLs, api-version, api-key header, Azure's filter fields.
        import re

        m = re.search(r"Azure OpenAI at (http://[0-9.:]+)", STARTUP)
        self.assertIsNotNone(m, STARTUP)
        az = openai.AzureOpenAI(
            azure_endpoint=m.group(1), api_key="demo-key", api_version="2024-10-21", max_retries=0, timeout=20
        )
        r = az.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        e = az.embeddings.create(model="text-embedding-3-small", input="hi")
        self.assertEqual(len(e.data[0].embedding), 1536)


def main():
    global GATEWAY, BASE_URL, STARTUP
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "switchboard"
    )
    GATEWAY, BASE_URL, STARTUP = start_gateway(binary)
    try:
        prog = unittest.main(argv=[sys.argv[0], "-v"], exit=False)
        ok = prog.result.wasSuccessful()
    finally:
        GATEWAY.terminate()
        try:
            GATEWAY.wait(timeout=10)
        except subprocess.TimeoutExpired:
            GATEWAY.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
