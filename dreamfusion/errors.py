"""User-facing errors.

Anything the user can cause (bad option, missing file, missing weights, corrupt checkpoint) raises
`UserError`; the CLI prints its message as one line and exits with `exit_code`, never a traceback.
"""


class UserError(Exception):
    """An error caused by input; printed as one line by the CLI."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class FeatureNotBuiltError(UserError):
    """An option that names a feature this version does not implement yet."""

    def __init__(self, feature: str):
        super().__init__(f"{feature} is not available in this version of dreamfusion")
