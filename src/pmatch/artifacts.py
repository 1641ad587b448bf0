"""The names of the files pmatch's stages write and read, in one place."""

# A catalogue folder.
CATALOG_FILE = "catalog.csv"
# A pairs file to score (`pmatch score`, monitoring batches).
PAIRS_FILE = "pairs.csv"

# A model folder (train), and what scoring needs of it.
MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
VOCABULARY_FILE = "vocab.json"
MINILM_VOCABULARY_FILE = "minilm_vocab.txt"
TRAIN_SUMMARY_FILE = "train_summary.json"
TRAINING_CURVE_FILE = "training_curve.png"

# An evaluation folder (evaluate).
METRICS_FILE = "metrics.json"
REFERENCE_SCORES_FILE = "reference_scores.csv"
# Monitoring's reference: the test split's listings (each photo with its own title) scored
# by the candidate, with photo and title statistics, and their embeddings (pmatch.monitor).
REFERENCE_LISTINGS_FILE = "reference_listings.csv"
REFERENCE_EMBEDDINGS_FILE = "reference_embeddings.npz"
REFERENCE_FILES = (REFERENCE_LISTINGS_FILE, REFERENCE_EMBEDDINGS_FILE)
PLOTS_FILE = "evaluation.png"
ERRORS_FILE = "errors.csv"
ERRORS_REPORT_FILE = "errors.html"
# Every test pair with the candidate's score, which the gate scores production on too.
TEST_PAIRS_FILE = "test_pairs.csv"
# A few test pairs and the scores the candidate gave them from their raw photo and text,
# which the smoke test reproduces after deployment.
CANARY_FILE = "canary.csv"
# What the evaluation was about: the data version of the catalogue.
EVALUATION_FILE = "evaluation.json"

# The gate's decision (reports/gate/decision.json), stored with a deployed version as gate.json,
# and the folder of a version that holds the canary pairs' photos.
GATE_FILE = "gate.json"
CANARY_FOLDER = "canary"

# A delivery: a catalogue folder of new listings, with an optional label column.
# One monitoring run's record (pmatch.monitor.decide) and the delivery's scored listings.
VERDICT_FILE = "verdict.json"
SCORES_FILE = "scores.csv"
DRIFT_REPORT_FILE = "drift.html"
DRIFT_JSON_FILE = "drift.json"

# The drift history (monitor).
HISTORY_CSV = "history.csv"
HISTORY_HTML = "history.html"
HISTORY_PLOT = "history.png"
