"""Prompt templates and vocabularies (data only): installed as ``pathgen.assets.prompts``."""
