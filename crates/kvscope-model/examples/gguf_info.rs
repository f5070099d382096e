//! Print a GGUF file's metadata and tensor list: `cargo run --example
//! gguf_info [PATH]` (default: the default model, fetched if needed).

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1).map(std::path::PathBuf::from);
    let path = kvscope_model::fetch::resolve_model(arg.as_deref())?;
    let g = kvscope_model::gguf::Gguf::open(&path)?;
    println!("{} (GGUF v{})", path.display(), g.version);
    for (k, v) in g.metadata() {
        let shown = match v {
            kvscope_model::gguf::MetaValue::Array(a) => {
                format!("[{} items] {:?}", a.len(), &a[..a.len().min(8)])
            }
            kvscope_model::gguf::MetaValue::Str(s) if s.len() > 2000 => format!("{:?}...", &s[..2000]),
            other => format!("{other:?}"),
        };
        println!("{k} = {shown}");
    }
    for t in g.tensors() {
        println!("{} {:?} {:?}", t.name, t.dims, t.ty);
    }
    Ok(())
}
