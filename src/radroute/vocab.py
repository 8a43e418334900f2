"""radroute's one controlled body-part vocabulary, and mapping of DICOM tags onto it."""
from __future__ import annotations

import re

#: The body-part vocabulary used by every command, model and the router.
BODY_PARTS: tuple[str, ...] = (
    "head", "neck", "chest", "abdomen", "pelvis", "spine",
    "upper_limb", "lower_limb", "breast", "whole_body", "unknown",
)

# DICOM PS3.16 Annex L defined terms for BodyPartExamined (and common variants seen in archives).
_DEFINED_TERMS: dict[str, str] = {}
for _part, _terms in {
    "head": "HEAD SKULL BRAIN IAC ORBIT EYE EAR NOSE SINUS FACE JAW MANDIBLE MAXILLA TMJ "
            "NASOPHARYNX OROPHARYNX TEMPORALBONE PITUITARY CIRCLEOFWILLIS CAROTIDSIPHON HEADNECK",
    "neck": "NECK LARYNX THYROID PHARYNX CAROTID CCA ICA ECA TRACHEA(NECK) PAROTID",
    "chest": "CHEST THORAX LUNG HEART RIB RIBS STERNUM CLAVICLE SCAPULA MEDIASTINUM "
             "HEARTCORONARY CORONARYARTERY AORTA THORACICAORTA PULMONARY CHESTABDOMEN CHEST_TO_PELVIS",
    "abdomen": "ABDOMEN LIVER KIDNEY PANCREAS SPLEEN STOMACH GALLBLADDER BILIARY COLON BOWEL "
               "ABDOMENPELVIS ABDOMINALAORTA ADRENAL DUODENUM ESOPHAGUS RENALARTERY",
    "pelvis": "PELVIS HIP BLADDER PROSTATE UTERUS OVARY RECTUM SACRUM SIJOINT COCCYX "
              "TESTIS SCROTUM PENIS VAGINA URETHRA",
    "spine": "SPINE CSPINE TSPINE LSPINE SSPINE LSSPINE CTSPINE TLSPINE WHOLESPINE "
             "CERVICALSPINE THORACICSPINE LUMBARSPINE VERTEBRA",
    "upper_limb": "ARM UPPERARM HUMERUS ELBOW FOREARM RADIUS ULNA WRIST HAND FINGER THUMB SHOULDER "
                  "UPRLIMB UPPEREXTREMITY UPPERLIMB AXILLA",
    "lower_limb": "LEG UPPERLEG LOWERLEG FEMUR KNEE PATELLA TIBIA FIBULA ANKLE FOOT HEEL CALCANEUS "
                  "TOE LOWLIMB LOWEREXTREMITY LOWERLIMB EXTREMITY THIGH",
    "breast": "BREAST MAMMA",
    "whole_body": "WHOLEBODY WHOLE_BODY BODY TOTALBODY",
}.items():
    for _t in _terms.split():
        _DEFINED_TERMS[_t] = _part

#: radroute vocabulary -> the DICOM defined term written when correcting BodyPartExamined.
DICOM_TERM_FOR: dict[str, str | None] = {
    "head": "HEAD", "neck": "NECK", "chest": "CHEST", "abdomen": "ABDOMEN", "pelvis": "PELVIS",
    "spine": "SPINE", "upper_limb": "UPPER LIMB", "lower_limb": "LOWER LIMB", "breast": "BREAST",
    "whole_body": "WHOLEBODY", "unknown": None,
}

# Free-text words found in Study/Series/Protocol descriptions, in priority order:
# specific structures before generic containers ("CT CHEST ABDOMEN" -> chest wins by order).
_FREE_TEXT: list[tuple[str, str]] = [
    (r"\bmammo|\bbreast|\bmamm", "breast"),
    (r"whole[\s_-]?body|\bpet[\s/-]?ct\b.*\bwb\b|\bwb\b", "whole_body"),
    (r"c[\s-]?spine|t[\s-]?spine|l[\s-]?spine|\bspine|\bspinal|\blumbar|\bcervical spine|\bthoracic spine|\bvertebr|\bsacrum", "spine"),
    (r"\bhead\b|\bbrain|\bskull|\bcranial|\bcrani|\borbit|\bsinus|\bfacial|\bface\b|\bpituitar|\bneuro", "head"),
    (r"\bneck\b|\bthyroid|\blarynx|\bcarotid|\bsoft tissue neck", "neck"),
    (r"\bchest|\bthorax|\bthoracic|\blung|\bcxr\b|\bpulmonary|\bcardiac|\bheart|\brib", "chest"),
    (r"\babdom|\babd\b|\bliver|\bkidney|\brenal|\bpancrea|\bkub\b|\benterograph|\burogra", "abdomen"),
    (r"\bpelvi|\bhip\b|\bhips\b|\bbladder|\bprostat|\buter|\bovar", "pelvis"),
    (r"\bshoulder|\bhumer|\belbow|\bforearm|\bwrist|\bhand\b|\bfinger|\bthumb|\bclavicle|\bupper (ext|limb)", "upper_limb"),
    (r"\bfemur|\bknee|\btibia|\bfibula|\bankle|\bfoot\b|\bfeet\b|\btoe|\bheel|\bleg\b|\blower (ext|limb)", "lower_limb"),
]
_FREE_TEXT_RE = [(re.compile(p, re.IGNORECASE), part) for p, part in _FREE_TEXT]


def body_part_from_term(term: str | None) -> str | None:
    """Map a BodyPartExamined value (DICOM defined term or close variant) to the vocabulary.

    Returns ``None`` when the term is empty or unknown.
    """
    if not term:
        return None
    key = re.sub(r"[\s\-]+", "", str(term).upper())
    if key in _DEFINED_TERMS:
        return _DEFINED_TERMS[key]
    return body_part_from_text(str(term))


def body_part_from_text(text: str | None) -> str | None:
    """Find a body part in free text (descriptions, protocol names); ``None`` if none is found."""
    if not text:
        return None
    for regex, part in _FREE_TEXT_RE:
        if regex.search(text):
            return part
    return None


def normalise_body_part(
    body_part_examined: str | None = None, *descriptions: str | None
) -> str:
    """The body part from tags: BodyPartExamined first, then free-text descriptions; else ``unknown``."""
    part = body_part_from_term(body_part_examined)
    if part:
        return part
    for text in descriptions:
        part = body_part_from_text(text)
        if part:
            return part
    return "unknown"
