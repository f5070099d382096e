//! The tokenizer and chat template reproduce llama.cpp's prompt ids exactly.

mod common;

use kvscope_model::chat_template::{ChatMessage, ChatTemplate};
use kvscope_model::gguf::Gguf;
use kvscope_model::tokenizer::Tokenizer;

fn load() -> (Tokenizer, ChatTemplate) {
    let g = Gguf::open(&common::model_path()).unwrap();
    (Tokenizer::from_gguf(&g).unwrap(), ChatTemplate::from_gguf(&g).unwrap())
}

#[test]
fn prompts_and_strings_tokenize_exactly_like_llamacpp() {
    let (tok, _) = load();
    let golden = common::llamacpp();
    let mut failures = vec![];
    for p in &golden.prompts {
        let ids = tok.encode(&p.prompt_text).unwrap();
        if ids != p.prompt_token_ids {
            failures.push(format!("prompt {}: got {:?}\n want {:?}", p.id, ids, p.prompt_token_ids));
        }
    }
    for s in &golden.tokenize_only {
        let want = s.token_ids.as_ref().unwrap();
        let ids = tok.encode(&s.text).unwrap();
        if &ids != want {
            failures.push(format!("string {}: got {:?}\n want {:?}", s.id, ids, want));
        }
    }
    assert_eq!(golden.prompts.len(), 12);
    assert_eq!(golden.tokenize_only.len(), 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_round_trips_every_reference_string() {
    let (tok, _) = load();
    for s in &common::llamacpp().tokenize_only {
        let ids = s.token_ids.as_ref().unwrap();
        assert_eq!(tok.decode(ids, false).unwrap(), s.text, "{}", s.id);
    }
    for p in &common::llamacpp().prompts {
        assert_eq!(tok.decode(&p.prompt_token_ids, false).unwrap(), p.prompt_text, "{}", p.id);
    }
}

#[test]
fn chat_prompts_render_exactly_like_the_reference() {
    let (_, tmpl) = load();
    let mut n = 0;
    for p in common::llamacpp().prompts.iter().filter(|p| p.kind.as_deref() == Some("chat")) {
        let msgs: Vec<ChatMessage> =
            p.messages.as_ref().unwrap().iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect();
        assert_eq!(tmpl.render(&msgs, true).unwrap(), p.prompt_text, "{}", p.id);
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn end_of_generation_ids_are_im_end_and_endoftext() {
    let (tok, _) = load();
    assert_eq!(tok.eog_ids(), &[0, 2]);
}
