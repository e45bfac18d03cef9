"""Everything that knows rulechef 0.2.x: hooks, per-phase bookkeeping, facts, prompt markers."""
