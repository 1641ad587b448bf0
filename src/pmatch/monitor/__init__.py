"""Monitoring: what production sees in each delivery, the drift signals, the decision to
retrain, and the pages people review.

signals.py computes the signals (one Evidently report), decide.py turns them into a verdict
and a retrain decision, reference.py describes listings (the model's reference and each
delivery) the same way. Import from the submodules; nothing is re-exported here.
"""
