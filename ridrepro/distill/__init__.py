"""Distillation methods, one short file each, on the Distiller interface of base.py."""

from ridrepro.distill.base import Distiller
from ridrepro.distill.bas import BAS
from ridrepro.distill.cifd import CIFD
from ridrepro.distill.rid import RID
from ridrepro.distill.ted import TED
from ridrepro.distill.vid import VID

__all__ = ["Distiller", "BAS", "VID", "RID", "TED", "CIFD"]
