"""Clean Descriptors: which free text may stay, and only when it is plainly safe.

PS3.15 marks descriptions and comments C under Clean Descriptors: keep them only if they
carry no identifying information. Most cannot be judged by a program (comments, reasons,
diagnoses, history), so they go, by the table's Basic Profile action. A short list of
descriptors says what was imaged and how, which research needs, and is usually written from
a scanner's protocol menu: study and series description, protocol name, the requested and
performed procedure, the contrast agent. Even these stay only when every word is in a
vocabulary of imaging terms below (or a plain number or measurement), and no word is one of
the contribution's own identifying strings: "CT HEAD W/O CONTRAST" stays, "HEAD DR SMITH" or
"MRI 12.03.2024" goes.
"""

from __future__ import annotations

import re
from collections.abc import Collection

SAFE_DESCRIPTORS = frozenset({
    "StudyDescription", "SeriesDescription", "ProtocolName", "RequestedProcedureDescription",
    "PerformedProcedureStepDescription", "ContrastBolusAgent",
})

VOCABULARY = frozenset("""
ABDOMEN ABDO ABD ACQ ACQUISITION ADC AND ANGIO ANGIOGRAPHY ANKLE AORTA AP ARM ARTERIAL AX AXIAL
BILAT BILATERAL BONE BRAIN BREAST C CALCIUM CARDIAC CAROTID CERVICAL CHEST COR CORONAL CONTRAST
CT CTA CUT DELAYED DIFFUSION DWI ELBOW ENHANCED EXAM FACE FAT FEMUR FIESTA FLAIR FOOT FSE FUSION
GADOLINIUM GD GRE HAND HEAD HEART HIP HIGH HUMERUS IN IV KNEE KUB L LAT LATERAL LEFT LEG LIVER
LOCALIZER LOCALISER LOW LUMBAR LUNG LUNGS MIP MPR MR MRA MRI MRCP NECK NEURO NM NON NO OBL
OBLIQUE OF ON OPP OUT OVERVIEW PA PANCREAS PELVIS PERFUSION PET PLAIN PORTAL POST PRE PROTOCOL
R RECON RECONSTRUCTION RIGHT ROUTINE SAG SAGITTAL SCOUT SCREENING SE SERIES SHOULDER SINUS SINUSES
SKULL SLICE SOFT SPINE SPIR STANDARD STIR SURVEY SWI T1 T2 T2W T1W TSE THIN THORACIC THORAX TIBIA
TISSUE TOF TOPOGRAM US VENOUS VOLUME W WITH WITHOUT WO WRIST X XR XRAY
""".split())

_WORD = re.compile(r"[A-Z0-9]+(?:\.[0-9]+)?")
_MEASURE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,2})?(?:MM|CM|KV|MAS|S|MS|T|D)?")
_DATE_LIKE = re.compile(r"[0-9]{1,4}\s*[./-]\s*[0-9]{1,2}\s*[./-]\s*[0-9]{1,4}")


def is_safe(text: str, identity: Collection[str]) -> bool:
    """Every word an imaging term or a short measurement, and none the patient's own."""
    upper = text.upper().replace("W/O", "WITHOUT").replace("W/", "WITH ")
    words = _WORD.findall(upper)
    if not words or re.sub(r"[A-Z0-9.\s/+()\-_,:]", "", upper):
        return False  # nothing to keep, or characters beyond a protocol menu's
    if _DATE_LIKE.search(upper):
        return False
    mine = {w.upper() for w in identity}
    return all(w not in mine and (w in VOCABULARY or _MEASURE.fullmatch(w)) for w in words)
