"""Measuring any model: ranking metrics, alignment/uniformity, semantic-gap twins."""
