"""Monitoring: drift signals, verdicts and the reports people review (placeholder until the
signals helper's package __init__ replaces it)."""
