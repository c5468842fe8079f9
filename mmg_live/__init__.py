"""mmg-live: real-time multimodal egocentric action recognition (MMG-Ego4D)."""

__version__ = "0.1.0"
