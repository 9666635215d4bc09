"""GPIO pin backends, one module each, imported only when configured."""
