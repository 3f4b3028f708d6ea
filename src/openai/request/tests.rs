use super::*;
use crate::openai::json::{summarize_messages, summary_at};

#[test]
fn parses_and_keeps_unknown_fields_verbatim() {
    let body = br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"x_custom":{"a": [1, 2]},"temperature":0.5}"#;
    let r = ChatRequest::from_slice(body).unwrap();
    assert_eq!(r.model, "openai/gpt-4o");
    assert_eq!(r.extra.len(), 1);
    assert_eq!(r.extra[0].1.get(), r#"{"a": [1, 2]}"#);
    let out = r.to_openai_json("gpt-4o", true, false);
    let s = std::str::from_utf8(&out).unwrap();
    assert!(s.contains(r#""x_custom":{"a": [1, 2]}"#), "{s}");
    assert!(s.starts_with(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]"#));
}

#[test]
fn forces_usage_on_streams_and_drops_routing_fields() {
    let body = br#"{"model":"a/b","models":["a/b","c/d"],"provider":{"sort":"price"},"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = ChatRequest::from_slice(body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.to_openai_json("b", true, false)).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert!(v.get("models").is_none());
    assert!(v.get("provider").is_none());
}

#[test]
fn invalid_utf8_is_a_400_whatever_the_length() {
    for pad in [0, 300] {
        let mut body = format!(
            r#"{{"model":"a/b","messages":[{{"role":"user","content":"{}"#,
            "a".repeat(pad)
        )
        .into_bytes();
        body.extend_from_slice(b"\xc3\x28\"}]}");
        let e = ChatRequest::from_bytes(Bytes::from(body)).unwrap_err();
        assert_eq!(e.status(), 400, "pad {pad}");
    }
}

#[test]
fn fast_and_serde_paths_agree() {
    for body in [
        r#"{"model":"a/b","messages":[{"role":"user","content":"hi \"x\" \u00e9"}],"tools":null,"metadata":{"task":"t"},"temperature":0.5,"stop":["a"],"x":[1,{"y":null}],"stream":false}"#,
        r#" { "models" : ["a/b","c/d"], "provider":{"sort":"price"}, "messages" : [ {"role":"system","content":[{"type":"text","text":"s"}]} ] , "tool_choice":"auto", "response_format":{"type":"json_object"} } "#,
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stre\u0061m":true}"#,
    ] {
        let fast = ChatRequest::from_slice(body.as_bytes()).unwrap();
        let mut de = serde_json::Deserializer::from_str(body);
        let slow = ChatRequest::deserialize(&mut de).unwrap();
        assert_eq!(
            fast.to_openai_json("u", true, true),
            slow.to_openai_json("u", true, true)
        );
        assert_eq!(fast.summary, slow.summary);
        assert_eq!(fast.tools, slow.tools);
        let again: serde_json::Value = serde_json::to_value(&fast).unwrap();
        let mut orig: serde_json::Value = serde_json::from_str(body).unwrap();
        // A known field set to null is the field left out.
        let o = orig.as_object_mut().unwrap();
        o.retain(|_, v| !v.is_null());
        o.entry("model").or_insert_with(|| "".into());
        assert_eq!(again, orig, "Serialize gives back what the client sent");
    }
}

#[test]
fn summary_counts_text_and_images() {
    let body = br#"{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"12345678"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#;
    let r = ChatRequest::from_slice(body).unwrap();
    assert_eq!(r.summary.count, 2);
    assert_eq!(r.summary.text_bytes, 12);
    assert!(r.summary.has_images);
    assert!(!r.summary.has_tool_messages);
}

#[test]
fn bad_inputs_are_clear_400s() {
    for (body, needle) in [
        (&b"{not json"[..], "malformed JSON"),
        (br#"{"model":"m","messages":[]}"#, "at least one message"),
        (br#"{"model":"m"}"#, "missing field `messages`"),
        (
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
            "missing field `model`",
        ),
        (
            br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
            "unknown role",
        ),
        (
            br#"{"model":"m","messages":[{"content":"x"}]}"#,
            "missing field `role`",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
            "content part",
        ),
        (br#"{"model":"m","messages":"hi"}"#, "array of messages"),
        (
            br#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#,
            "invalid type",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "invalid type",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
            "temperature",
        ),
        (br#"[1,2]"#, "request object"),
    ] {
        let e = ChatRequest::from_slice(body).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.message().contains(needle),
            "{} does not contain {needle}",
            e.message()
        );
    }
}

#[test]
fn typed_views_parse_on_demand() {
    let body = br#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"stop":"END"}"#;
    let r = ChatRequest::from_slice(body).unwrap();
    assert!(r.summary.has_tool_messages);
    let m = r.parse_messages().unwrap();
    assert_eq!(m[0].tool_calls.as_ref().unwrap()[0].function.name, "f");
    assert_eq!(r.parse_tools().unwrap()[0].function.name, "f");
    assert_eq!(
        r.parse_tool_choice().unwrap(),
        Some(ToolChoice::Function("f".into()))
    );
    assert_eq!(r.stop, Some(Stop::One("END".into())));
}

fn any_message() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let text = "[ -~\u{e9}\u{1F600}\n\t\"\\\\]{0,10}";
    let part = (
        prop_oneof![Just("text"), Just("image_url"), Just("input_audio")],
        proptest::option::of(text),
        any::<bool>(),
    )
        .prop_map(|(t, text, typed)| {
            let mut p = serde_json::Map::new();
            if typed {
                p.insert("type".into(), t.into());
            }
            if let Some(text) = text {
                p.insert("text".into(), text.into());
            }
            serde_json::Value::Object(p)
        });
    let content = prop_oneof![
        Just(serde_json::Value::Null),
        text.prop_map(serde_json::Value::from),
        proptest::collection::vec(part, 0..3).prop_map(serde_json::Value::from),
        Just(serde_json::json!(7)),
    ]
    .boxed();
    (
        prop_oneof![4 => Just("user"), 4 => Just("system"), 4 => Just("tool"), 1 => Just("robot")],
        proptest::bool::weighted(0.9),
        proptest::option::weighted(0.9, content),
        any::<bool>(),
    )
        .prop_map(|(role, with_role, content, tool)| {
            let mut m = serde_json::Map::new();
            if with_role {
                m.insert("role".into(), role.into());
            }
            if let Some(c) = content {
                m.insert("content".into(), c);
            }
            if tool {
                m.insert("tool_call_id".into(), "c1".into());
            }
            m.insert("name".into(), serde_json::json!({"x": [1, null]}));
            serde_json::Value::Object(m)
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The scanner's summary of `messages` is serde's, on generated arrays and on
    /// single-byte mutations of them (where it refuses, serde decides).
    #[test]
    fn fast_messages_summary_agrees_with_serde(
        msgs in proptest::collection::vec(any_message(), 0..4),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
        byte in proptest::prelude::any::<u8>(),
    ) {
        let text = serde_json::to_string(&msgs).unwrap() + "  ,\"x\":1}";
        let mut bytes = text.clone().into_bytes();
        let at = cut.index(bytes.len());
        bytes[at] = byte;
        for t in [text, String::from_utf8(bytes).unwrap_or_default()] {
            if let Ok(fast) = summary_at(&t, 0) {
                let (slow, len) = summarize_messages(&t).unwrap();
                proptest::prop_assert_eq!(fast, (slow, len), "{}", t);
            }
        }
    }
}
