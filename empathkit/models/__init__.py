"""Model layer: backbone resolution (name → model/tokenizer), chat formatting, batched generation."""
