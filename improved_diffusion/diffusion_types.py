"""The choices of a Gaussian diffusion: what the network predicts, how the reverse variance is set, which loss.

A leaf module (imports nothing of the project) so that the diffusion, the denoiser and the model
factory can all name the choices; `improved_diffusion.gaussian_diffusion` re-exports them under the
names openai/improved-diffusion users import.
"""
import enum


class ModelMeanType(enum.Enum):
    """What the network predicts."""
    PREVIOUS_X = enum.auto()  # x_{t-1}
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise
    VELOCITY = enum.auto()  # v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, sec. 4)


class ModelVarType(enum.Enum):
    """How the reverse-process variance is chosen."""
    LEARNED = enum.auto()  # the network outputs log-variance
    FIXED_SMALL = enum.auto()  # posterior variance beta_tilde_t
    FIXED_LARGE = enum.auto()  # beta_t
    LEARNED_RANGE = enum.auto()  # IDDPM eq. 15: interpolate between log beta_tilde and log beta


class LossType(enum.Enum):
    MSE = enum.auto()  # simple loss (with the VLB term added for learned variances)
    RESCALED_MSE = enum.auto()  # same, the VLB term scaled by T / 1000
    KL = enum.auto()  # the variational bound
    RESCALED_KL = enum.auto()  # the variational bound times T

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)
