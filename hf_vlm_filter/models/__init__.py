"""Model-side helpers: checkpoint loading, prompt/tensor building, score readouts."""
