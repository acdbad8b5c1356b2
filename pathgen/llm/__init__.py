"""LLM/VLM providers behind one protocol: openai-compatible, mistral and offline."""
