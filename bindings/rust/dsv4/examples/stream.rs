use dsv4::{ContextOptions, EventKind, Generator, Model};

fn main() -> Result<(), dsv4::Error> {
    let model = Model::load("models/tiny-chat")?; // the demo model of run-demo.sh
    let ctx = model.context(&ContextOptions { context_length: Some(2048), ..Default::default() })?;
    let (session, tokenizer) = (ctx.session()?, model.tokenizer()?);
    let mut gen = Generator::new(&session, &tokenizer)?;
    let request = r#"{"messages":[{"role":"user","content":"What is the capital of Peru?"}],"max_tokens":64}"#;
    for event in gen.stream(request)? {
        let event = event?;
        if matches!(event.kind, EventKind::Reasoning | EventKind::Content) { print!("{}", event.text()); }
    }
    Ok(())
}
