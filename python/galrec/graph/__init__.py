"""The user-item graph's Python side: hop-0/1/2 prompts and a power-law edge generator."""
