"""Building blocks below every backbone and head: tubelet tokens, positions, transformer blocks."""
