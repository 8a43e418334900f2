"""radroute's one controlled body-part vocabulary, and mapping of DICOM tags onto it."""
from __future__ import annotations

import re

#: The body-part vocabulary used by every command, model and the router.
BODY_PARTS: tuple[str, ...] = (
    "head", "neck", "chest", "abdomen", "pelvis", "spine",
    "upper_limb", "lower_limb", "breast", "whole_body", "unknown",
)

# DICOM PS3.16 Annex L defined terms for BodyPartExamined (and common variants seen in archives).
# Multi-region terms map to their first (most cranial) region. EXTREMITY is deliberately absent:
# it may be an arm or a leg, so the descriptions decide (or ``unknown``).
_DEFINED_TERMS: dict[str, str] = {}
for _part, _terms in {
    "head": "HEAD SKULL BRAIN IAC ORBIT EYE EYELID CORNEA SCLERA EAR NOSE SINUS FACE CHEEK JAW MANDIBLE "
            "MAXILLA ZYGOMA TMJ MOUTH TONGUE TEETH TOOTH DENTAL SCALP CEREBELLUM NASOPHARYNX OROPHARYNX "
            "TEMPORALBONE PITUITARY CIRCLEOFWILLIS CAROTIDSIPHON HEADNECK HEADANDNECK",
    "neck": "NECK LARYNX THYROID PHARYNX CAROTID CCA ICA ECA PAROTID SUBMANDIBULAR NECKCHEST "
            "NECKCHESTABDOMEN NECKCHESTABDPELV NECKCHESTABDPELVIS",
    "chest": "CHEST THORAX LUNG HEART RIB RIBS STERNUM CLAVICLE SCAPULA MEDIASTINUM BRONCHUS TRACHEA THYMUS "
             "HEARTCORONARY CORONARYARTERY AORTA THORACICAORTA PULMONARY CHESTABDOMEN CHESTABDPELVIS "
             "CHESTTOPELVIS",
    "abdomen": "ABDOMEN LIVER KIDNEY PANCREAS SPLEEN STOMACH GALLBLADDER BILIARY BILEDUCT COLON BOWEL "
               "ABDOMENPELVIS ABDPELVIS ABDOMINALAORTA ADRENAL DUODENUM JEJUNUM ILEUM ESOPHAGUS "
               "RENALARTERY URETER UPRURTRACT",
    "pelvis": "PELVIS HIP HIPS BLADDER PROSTATE UTERUS CERVIX OVARY RECTUM SACRUM SIJOINT COCCYX ILIUM "
              "BUTTOCK TESTIS SCROTUM PENIS VAGINA VULVA URETHRA",
    "spine": "SPINE CSPINE TSPINE LSPINE SSPINE LSSPINE CTSPINE TLSPINE WHOLESPINE "
             "CERVICALSPINE THORACICSPINE LUMBARSPINE VERTEBRA",
    "upper_limb": "ARM UPPERARM HUMERUS ELBOW FOREARM RADIUS ULNA RADIUSULNA WRIST HAND FINGER THUMB "
                  "SHOULDER ACJOINT UPRLIMB UPPEREXTREMITY UPPERLIMB AXILLA",
    "lower_limb": "LEG UPPERLEG LOWERLEG FEMUR KNEE PATELLA TIBIA FIBULA TIBIAFIBULA CALF ANKLE FOOT HEEL "
                  "CALCANEUS TOE LOWLIMB LOWEREXTREMITY LOWERLIMB THIGH",
    "breast": "BREAST MAMMA",
    "whole_body": "WHOLEBODY BODY TOTALBODY",
}.items():
    for _t in _terms.split():
        _DEFINED_TERMS[_t] = _part

#: radroute vocabulary -> the DICOM defined term written when correcting BodyPartExamined.
DICOM_TERM_FOR: dict[str, str | None] = {
    "head": "HEAD", "neck": "NECK", "chest": "CHEST", "abdomen": "ABDOMEN", "pelvis": "PELVIS",
    "spine": "SPINE", "upper_limb": "ARM", "lower_limb": "LEG", "breast": "BREAST",
    "whole_body": "WHOLEBODY", "unknown": None,
}

# Free-text words found in Study/Series/Protocol descriptions, in priority order:
# specific structures before generic containers ("CT CHEST ABDOMEN" -> chest wins by order).
_FREE_TEXT: list[tuple[str, str]] = [
    (r"\bmammo|\bbreast|\bmamm|\btomosynth", "breast"),
    (r"whole[\s_-]?body|total[\s_-]?body|\bwb\b|ganzk[oö]rper|cuerpo entero|corps entier", "whole_body"),
    (r"\b[clt][\s-]?spine|\bls[\s-]?spine|\bspine|\bspinal|\blumbar|\bcervical spine|\bthoracic spine"
     r"|\bcervical\b|\bvertebr|\bsacrum|\b[clt]\d{1,2}\s*-\s*[clts]\d|\bwirbels|\bcolumna|\brachis|\bmyelo", "spine"),
    (r"\bhead\b|\bbrain|\bskull|\bcrani|\bcr[aá]neo|\bsch[aä]del|\bschaedel|\borbit|\bsinus|\bfacial"
     r"|\bface\b|\bpituitar|\bneuro|\bteeth|\btooth|\bdental|\bpanoram|\bjaw\b|\bmandib|\bmaxill"
     r"|\bopg\b|\btmj\b|\biac\b|\bcerebr|\benceph", "head"),
    (r"\bneck\b|\bthyroid|\blarynx|\bcarotid|\bparotid", "neck"),
    (r"\bchest|\bthorax|\bthoracic|\bt[oó]rax|\blung|\bcxr\b|\bpulmonary|\bcardiac|\bheart"
     r"|\bcoronar|\brib\b|\bribs\b|\bsternum|\bmediastin|\bhrct\b|\bctpa\b", "chest"),
    (r"\babdom|\babd\b|\bliver|\bhepat|\bkidney|\brenal|\bpancrea|\bspleen|\bstomach|\bgastr"
     r"|\bbowel|\bcolon|\bbiliar|\bgallbladder|\bmrcp\b|\bkub\b|\benterograph|\burogra|\bbauch", "abdomen"),
    (r"\bpelvi|\bhip\b|\bhips\b|\bbladder|\bprostat|\buter|\bovar|\brect(um|al)\b|\bsacroil"
     r"|\bcervix|\bscrot|\btestic|\bbecken", "pelvis"),
    (r"\bshoulder|\bhumer|\belbow|\bforearm|\bwrist|\bhand\b|\bhands\b|\bfinger|\bthumb|\bclavicle"
     r"|\bscaphoid|\bradius\b|\bulna|\barm\b|\bupper (ext|limb)", "upper_limb"),
    (r"\bfemur|\bfemoral|\bknee|\bpatell|\btibia|\bfibula|\bankle|\bfoot\b|\bfeet\b|\btoe|\bheel"
     r"|\bcalcane|\bachilles|\bthigh|\bleg\b|\blegs\b|\blower (ext|limb)", "lower_limb"),
]
_FREE_TEXT_RE = [(re.compile(p, re.IGNORECASE), part) for p, part in _FREE_TEXT]


def body_part_from_term(term: str | None) -> str | None:
    """Map a BodyPartExamined value (DICOM defined term or close variant) to the vocabulary.

    Returns ``None`` when the term is empty or unknown.
    """
    if not term:
        return None
    key = re.sub(r"[\s\-_]+", "", str(term).upper())
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
