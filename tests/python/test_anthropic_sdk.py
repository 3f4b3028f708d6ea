"""Drives the ready gateway's Anthropic Messages ingress (the `switchboard` binary, demo
providers, port 0) with the official `anthropic` Python package, against every provider kind.

Run by .ci/run in its own venv:
    python tests/python/test_anthropic_sdk.py [path/to/gateway-binary]
"""

import base64
import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import anthropic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_process import PNG_HEX, start_gateway  # noqa: E402

MODELS = ["anthropic/claude-sonnet-4", "openai/gpt-4o-mini", "google/gemini-2.5-flash"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
# A 1x1 transparent PNG.
PNG = base64.b64encode(bytes.fromhex(PNG_HEX)).decode()

GATEWAY = None
BASE_URL = None


def client():
    # The SDK's own base URL convention: the gateway's root (it appends /v1/messages).
    return anthropic.Anthropic(api_key="unused", base_url=BASE_URL, max_retries=0, timeout=20)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


class Errors(unittest.TestCase):
    def test_unknown_model_is_not_found(self):
        with self.assertRaises(anthropic.NotFoundError) as cm:
            client().messages.create(
                model="nobody/nothing", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        self.assertEqual(cm.exception.body["type"], "error")
        self.assertEqual(cm.exception.body["error"]["type"], "not_found_error")

    def test_bad_request_is_400_in_anthropic_shape(self):
        # A server tool only an Anthropic model runs, asked of another provider's model.
        with self.assertRaises(anthropic.BadRequestError) as cm:
            client().messages.create(
                model="openai/gpt-4o-mini",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
            )
        self.assertEqual(cm.exception.body["error"]["type"], "invalid_request_error")

    def test_oversized_body_is_413(self):
        big = b'{"model":"fast","max_tokens":5,"messages":[{"role":"user","content":"' + b"a" * (10 * 1024 * 1024) + b'"}]}'
        req = urllib.request.Request(BASE_URL + "/v1/messages", data=big, headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=20)
            self.fail("10 MiB body accepted")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 413)
            self.assertEqual(json.loads(e.read())["error"]["type"], "request_too_large")
        except (ConnectionError, urllib.error.URLError):
            pass  # the server may close the connection after answering 413 mid-upload


class PerModel(unittest.TestCase):
    def each(self):
        for m in MODELS:
            with self.subTest(model=m):
                yield m

    def test_plain(self):
        for m in self.each():
            r = client().messages.create(
                model=m, max_tokens=256, messages=[{"role": "user", "content": "Say hello to the tests"}]
            )
            self.assertEqual(r.type, "message")
            self.assertEqual(r.role, "assistant")
            self.assertEqual(r.model, m)
            self.assertEqual(r.stop_reason, "end_turn")
            self.assertIn("hello to the tests", text_of(r))
            self.assertGreater(r.usage.input_tokens, 0)
            self.assertGreater(r.usage.output_tokens, 0)
            self.assertGreater(r.model_extra.get("usage", {}).get("cost", 1) if r.model_extra else 1, 0)

    def test_system_blocks_and_multi_turn(self):
        for m in self.each():
            r = client().messages.create(
                model=m,
                max_tokens=256,
                system=[
                    {"type": "text", "text": "You are terse."},
                    {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
                ],
                messages=[
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": [{"type": "text", "text": "Say goodbye to the tests"}]},
                ],
                metadata={"user_id": "user-1"},
                temperature=0.5,
            )
            self.assertIn("goodbye to the tests", text_of(r))
            self.assertIsNotNone(r.usage.cache_read_input_tokens)

    def test_streaming(self):
        for m in self.each():
            with client().messages.stream(
                model=m, max_tokens=256, messages=[{"role": "user", "content": "stream me a greeting"}]
            ) as stream:
                types = [e.type for e in stream]
                final = stream.get_final_message()
            self.assertEqual(types[0], "message_start")
            self.assertIn("content_block_delta", types)
            self.assertEqual(types[-1], "message_stop")
            self.assertIn("stream me a greeting", text_of(final))
            self.assertEqual(final.stop_reason, "end_turn")
            self.assertGreater(final.usage.output_tokens, 0)

    def test_tools_and_tool_result_follow_up(self):
        for m in self.each():
            msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
            r = client().messages.create(
                model=m, max_tokens=512, messages=msgs, tools=[WEATHER_TOOL], tool_choice={"type": "auto"}
            )
            self.assertEqual(r.stop_reason, "tool_use")
            use = next(b for b in r.content if b.type == "tool_use")
            self.assertEqual(use.name, "get_weather")
            self.assertIn("city", use.input)
            msgs.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]})
            msgs.append(
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees and sunny"}]}
            )
            r2 = client().messages.create(model=m, max_tokens=512, messages=msgs, tools=[WEATHER_TOOL])
            self.assertEqual(r2.stop_reason, "end_turn")
            self.assertIn("18 degrees and sunny", text_of(r2))

    def test_streamed_tool_use(self):
        for m in self.each():
            with client().messages.stream(
                model=m,
                max_tokens=512,
                messages=[{"role": "user", "content": "Weather in Rome?"}],
                tools=[WEATHER_TOOL],
                tool_choice={"type": "tool", "name": "get_weather"},
            ) as stream:
                final = stream.get_final_message()
            use = next(b for b in final.content if b.type == "tool_use")
            self.assertEqual(use.name, "get_weather")
            self.assertIn("city", use.input)
            self.assertEqual(final.stop_reason, "tool_use")

    def test_image_input(self):
        for m in self.each():
            r = client().messages.create(
                model=m,
                max_tokens=256,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                            {"type": "text", "text": "What is in this image?"},
                        ],
                    }
                ],
            )
            self.assertIn("1 image", text_of(r))

    def test_max_tokens_and_stop_sequences(self):
        for m in self.each():
            r = client().messages.create(
                model=m, max_tokens=3, messages=[{"role": "user", "content": "write a long story"}]
            )
            self.assertEqual(r.stop_reason, "max_tokens")
            r = client().messages.create(
                model=m, max_tokens=256, messages=[{"role": "user", "content": "greet me"}], stop_sequences=["demo"]
            )
            self.assertIn(r.stop_reason, ("end_turn", "stop_sequence"))
            self.assertNotIn("demo", text_of(r))

    def test_count_tokens(self):
        for m in self.each():
            r = client().messages.count_tokens(model=m, messages=[{"role": "user", "content": "count me"}])
            self.assertGreater(r.input_tokens, 0)


class Thinking(unittest.TestCase):
    def test_thinking_signatures_round_trip(self):
        m = "anthropic/claude-sonnet-4"
        msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
        with client().messages.stream(
            model=m,
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=msgs,
            tools=[WEATHER_TOOL],
        ) as stream:
            kinds = {e.delta.type for e in stream if e.type == "content_block_delta"}
            final = stream.get_final_message()
        self.assertIn("thinking_delta", kinds)
        self.assertIn("signature_delta", kinds)
        self.assertEqual(final.content[0].type, "thinking")
        self.assertTrue(final.content[0].signature)
        use = next(b for b in final.content if b.type == "tool_use")
        msgs.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]})
        # The demo Anthropic verifies the thinking block's signature.
        r = client().messages.create(
            model=m,
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=msgs,
            tools=[WEATHER_TOOL],
        )
        self.assertEqual(r.stop_reason, "end_turn")


def main():
    global GATEWAY, BASE_URL
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "switchboard"
    )
    GATEWAY, BASE_URL, _ = start_gateway(binary)
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
