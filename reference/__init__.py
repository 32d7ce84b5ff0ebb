"""NumPy golden reference of Stable Diffusion: ops, tokenizer, text encoders, UNet, VAE, samplers, pipeline."""
