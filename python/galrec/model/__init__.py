"""The GAL-Rec model: backbone, ID embeddings, heads, score prior, losses, momentum."""
