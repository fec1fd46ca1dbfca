"""Events in: stored once, scored; replies, provider feedback, the consent ledger, handoffs."""
