"""giftwheel: livestream gifts in, stepper motor rounds out, exactly once."""

__version__ = "0.1.0"
