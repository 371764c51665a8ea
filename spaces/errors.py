"""The error a bad search space raises: it names the file, the parameter, the rule and the value."""


class SpaceError(ValueError):
    """A search space (file, built-in or Python object) breaks a rule, or a grid was asked for."""
