"""Search spaces as data: the lesson's priority order, validated, sampled at random."""

from spaces.errors import SpaceError

__all__ = ["SpaceError"]
