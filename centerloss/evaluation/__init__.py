"""What a model is worth: classification metrics, verification on pairs, inference over a split."""
