"""The paper companion: Table 11 recomputed, paper-vs-reproduction, run info, report check."""
