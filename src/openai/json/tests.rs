//! The API's tests: they hold in both configurations (the hand-written implementations and
//! `--cfg switchboard_serde_json`).
use super::*;
use proptest::prelude::*;

fn valid(s: &str) -> bool {
    members(s, |_| Ok(())).is_ok()
}

#[test]
fn accepts_json_and_reports_members() {
    let body = r#" {"a" : 1, "b\"c": [true, false, null, -0.5e+3, {"x": "y\u00e9\n"}], "d": {}} "#;
    let mut seen = Vec::new();
    let close = members(body, |m| {
        seen.push((
            String::from_utf8(m.key.to_vec()).unwrap(),
            m.escaped_key,
            &body[m.value],
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(&body[close..], "} ");
    assert_eq!(
        seen,
        [
            ("a".to_owned(), false, "1"),
            (
                r#"b\"c"#.to_owned(),
                true,
                r#"[true, false, null, -0.5e+3, {"x": "y\u00e9\n"}]"#
            ),
            ("d".to_owned(), false, "{}"),
        ]
    );
    assert!(valid("{}"));
}

#[test]
fn refuses_invalid_json() {
    for s in [
        "",
        "[]",
        "{",
        "{}x",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"{"a":tru}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12g4"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":[1 2]}"#,
        r#"{"a":{"b" 1}}"#,
        r#"{"a":"unterminated}"#,
        r#"{a:1}"#,
        r#"{"a":[}"#,
        "{\"a\":1}{}",
    ] {
        assert!(!valid(s), "{s:?}");
    }
    // The scanner recurses, so it refuses nesting deeper than serde_json's default limit;
    // serde_json steps over a value it captures raw or ignores without recursing, at any depth
    // (as its typed decode does with members it does not type).
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(valid(&deep), cfg!(switchboard_serde_json));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The scanner agrees with serde_json on arbitrary JSON objects and on arbitrary
    /// mutations of them.
    #[test]
    fn agrees_with_serde_json(
        v in proptest::collection::btree_map("[a-z\"\\\\\u{e9}]{0,4}", any_json(), 0..6),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let text = serde_json::to_string(&v).unwrap();
        prop_assert!(valid(&text));
        let mut bytes = text.clone().into_bytes();
        let at = cut.index(bytes.len());
        bytes[at] = byte;
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let serde = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s);
            // The one difference: numbers too large for an f64 are valid JSON here
            // (the grammar has no range) but refused by serde_json.
            let out_of_range = serde
                .as_ref()
                .is_err_and(|e| e.to_string().contains("out of range"));
            if !out_of_range {
                prop_assert_eq!(valid(s), serde.is_ok(), "{}", s);
            }
        }
        prop_assert!(!valid(&text[..text.len() - 1]));
    }
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e9f64..1e9).prop_map(serde_json::Value::from),
        "[ -~\u{e9}\u{1F600}\n\t\"\\\\]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn replaces_one_member_and_keeps_every_other_byte() {
    let body = br#" { "model" : "a",  "x":{"model":"inner"}, "y" : [1, 2 ] } "#;
    let out = replace_member_str(body, "model", "b\"c").unwrap();
    assert_eq!(
        out,
        br#" { "model" : "b\"c",  "x":{"model":"inner"}, "y" : [1, 2 ] } "#.to_vec()
    );
    assert!(replace_member_str(br#"{"x":1}"#, "model", "b").is_none());
    assert!(replace_member_str(br#"{"mod\u0065l":"a"}"#, "model", "b").is_none());
    assert!(replace_member_str(br#"{"model":"a"} x"#, "model", "b").is_none());
}

#[test]
fn usage_is_written_as_serde_json_writes_it() {
    let u: crate::openai::Usage = serde_json::from_str(
        r#"{"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 3}, "cost": 0.5}"#,
    )
    .unwrap();
    let mut out = Vec::new();
    write_usage(&mut out, &u);
    assert_eq!(out, serde_json::to_vec(&u).unwrap());
}

#[test]
fn the_end_of_hook_reads_a_value_in_the_walk() {
    let s = r#" {"a": [1, {"b": "c"}], "messages": [{"role": "user", "content": "hi"}], "z": 3} "#;
    let mut summary = None;
    let mut keys = Vec::new();
    let close = members_with(
        s,
        |key, start| {
            (key == b"messages").then(|| {
                let (sum, end) = summary_at(s, start)?;
                summary = Some(sum);
                Ok(end)
            })
        },
        |m| {
            keys.push((String::from_utf8(m.key.to_vec()).unwrap(), &s[m.value]));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(&s[close..], "} ");
    assert_eq!(summary.map(|s| (s.count, s.text_bytes)), Some((1, 2)));
    assert_eq!(
        keys,
        [
            ("a".to_owned(), r#"[1, {"b": "c"}]"#),
            (
                "messages".to_owned(),
                r#"[{"role": "user", "content": "hi"}]"#
            ),
            ("z".to_owned(), "3"),
        ]
    );
    // A hook that disagrees with the document refuses it.
    assert!(members_with(s, |_, start| Some(Ok(start)), |_| Ok(())).is_err());
}

#[test]
fn chunks_read_and_write_as_serde_json_does() {
    let text = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \"x\"\n\u00e9","tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
    let c = ChatCompletionChunk::from_json(text).unwrap();
    let want: ChatCompletionChunk = serde_json::from_str(text).unwrap();
    assert_eq!(c, want);
    let json = serde_json::to_vec(&c).unwrap();
    let mut out = Vec::new();
    c.write_json(&mut out);
    assert_eq!(out, json);
    let ev = c.to_sse_event_then(b"tail");
    assert_eq!(&ev[..6], b"data: ");
    assert_eq!(&ev[6..ev.len() - 6], &json[..]);
    assert_eq!(&ev[ev.len() - 6..], b"\n\ntail");
    for bad in [
        "",
        "{",
        r#"{"id":"c","choices":[{"index":-1}]}"#,
        r#"{"id":"c"} x"#,
    ] {
        let want = serde_json::from_str::<ChatCompletionChunk>(bad).map_err(|e| e.to_string());
        let got = ChatCompletionChunk::from_json(bad).map_err(|e| e.to_string());
        assert_eq!(got, want, "{bad}");
    }
}
