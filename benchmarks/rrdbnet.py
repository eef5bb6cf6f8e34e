"""ESRGAN's RRDBNet (x4, 23 blocks, 16.7 M parameters): the classic GAN-SR baseline for benchmarks.

The network lives in the package (it is also the converted Real-ESRGAN teacher); the benchmarks
import it from here so their ``from rrdbnet import RRDBNet`` keeps working.
"""

from slimdiffsr.models.rrdbnet import RRDBNet

__all__ = ["RRDBNet"]
