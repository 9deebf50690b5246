"""bpttlab: vanishing and exploding gradients in recurrent networks, measured end to end."""

__version__ = "0.1.0"
