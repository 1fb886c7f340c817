"""The synthetic machines: the machine types' names, one physical sound model
per machine type (`industrial_machines`, `toy_machines`), and their sections
per layout."""

from asd_keras.data.synthetic.industrial_machines import Bearing
from asd_keras.data.synthetic.industrial_machines import Fan
from asd_keras.data.synthetic.industrial_machines import Gearbox
from asd_keras.data.synthetic.industrial_machines import Pump
from asd_keras.data.synthetic.industrial_machines import Slider
from asd_keras.data.synthetic.industrial_machines import Valve
from asd_keras.data.synthetic.toy_machines import ToyCar
from asd_keras.data.synthetic.toy_machines import ToyTrain

# Every synthetic machine type. Seeds derive from a type's position here, so
# new types are appended: the earlier types' audio never changes.
MACHINE_TYPES = (
    "fan", "pump", "gearbox", "valve", "slider", "bearing", "ToyCar", "ToyTrain"
)
# The types written when none are chosen (the demo and the tests' data).
DEFAULT_MACHINE_TYPES = ("fan", "pump", "gearbox", "valve", "slider")
# The seven machine types of DCASE 2022 Task 2 (the folder names).
DCASE2022_MACHINE_TYPES = (
    "fan", "gearbox", "bearing", "slider", "ToyCar", "ToyTrain", "valve"
)

_MODELS = {
    "fan": Fan(),
    "pump": Pump(),
    "gearbox": Gearbox(),
    "valve": Valve(),
    "slider": Slider(),
    "bearing": Bearing(),
    "ToyCar": ToyCar(),
    "ToyTrain": ToyTrain(),
}

# Sections per layout and split (reference dcase.md section 1).
_SECTIONS = {
    "dcase2020": {"dev": ("00", "02", "04"), "eval": ("01", "03", "05")},
    "dcase2021": {"dev": ("00", "01", "02"), "eval": ("03", "04", "05")},
    "dcase2022": {"dev": ("00", "01", "02"), "eval": ("03", "04", "05")},
    "dcase2023": {"dev": ("00",), "eval": ("00",)},
    "dcase2026": {"dev": ("00",), "eval": ("00",)},
}

# The 2024+ data hide some attributes ("noAttribute") and shuffle those
# clip indices (reference dcase.md section 1.5); the generator does the same
# for this machine type in the one-section layouts.
_HIDDEN_ATTRIBUTE_MACHINE = "slider"
