"""The AVE data format as constants: segment count, feature sizes, classes and their names, the
background index, file names and HDF5 keys. No imports from the package and no reading: the
model layer, metrics and checkpoints depend on these numbers without depending on data loading
(avel_dgl/data/ave.py reads and checks files laid out this way, avel_dgl/data/dataset.py loads
whole folders; docs/DATA.md describes them).
"""

N_SEGMENTS = 10  # 1-s segments per video
N_EVENTS = 28
N_CLASSES = N_EVENTS + 1  # 28 events + background
BACKGROUND = N_EVENTS  # index 28
AUDIO_DIM = 128  # VGGish feature per segment
VISUAL_MAP_SHAPE = (7, 7, 512)  # VGG19 pool5 map per segment
VISUAL_DIM = VISUAL_MAP_SHAPE[-1]  # after global average pooling
# The VGG19 weights visual features can be extracted with (video/vgg19.py): keras = the release's
# (the AVE features), torchvision = torchvision's own (another feature space).
VISUAL_WEIGHTS = ("keras", "torchvision")

FEATURE_KEY = "avadataset"
ORDER_KEY = "order"

AUDIO_FILE = "audio_feature.h5"
VISUAL_FILE = "visual_feature.h5"
LABELS_FILE = "labels.h5"
RIGHT_LABELS_FILE = "right_labels.h5"
MIL_LABELS_FILE = "mil_labels.h5"
NOISY_LABELS_FILE = "labels_noisy.h5"
NOISY_AUDIO_FILE = "audio_feature_noisy.h5"
NOISY_VISUAL_FILE = "visual_feature_noisy.h5"
ANNOTATIONS_FILE = "Annotations.txt"
SPLITS = ("train", "val", "test")
ORDER_FILES = {split: f"{split}_order.h5" for split in SPLITS}
NOISY_FILES = (NOISY_LABELS_FILE, NOISY_AUDIO_FILE, NOISY_VISUAL_FILE)

# Which segment-label file each test label set reads. Training and validation always use labels.h5.
LABEL_SETS = {"o-ave": LABELS_FILE, "c-ave": RIGHT_LABELS_FILE}

# The 28 AVE categories in index order (the public release's ordering), then background.
CLASS_NAMES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin", "background",
)
assert len(CLASS_NAMES) == N_CLASSES


# ---- the tables avel-dgl writes -------------------------------------------------------------------
# Their header rows are also what marks a CSV file as avel-dgl's, for --overwrite (avel_dgl/outputs.py).

def event_columns(extra_columns=()) -> list[str]:
    """predict's (and localize's, with extra_columns ("path",)) events table."""
    return ["row", *extra_columns, "class", "name", "start", "end", "confidence"]


def segment_columns(extra_columns=()) -> list[str]:
    """predict's (and localize's) per-segment probabilities table."""
    return ["row", *extra_columns, "segment", "start", "end", "class", "name", *(f"p_{c}" for c in range(N_CLASSES))]


PER_CLASS_COLUMNS = ["class", "name", "segments", "correct", "accuracy"]  # evaluate's and a run's per-class table
CSV_HEADERS = frozenset(",".join(columns) for columns in (
    *(make(extra) for make in (event_columns, segment_columns) for extra in ((), ("path",))), PER_CLASS_COLUMNS))
