"""Speed figures, printed by scripts rather than asserted in tests: `make bench` runs them all."""
