"""Operator control of the motors (stop, hold, resume, cancel): the API's submit, the workers' executor."""
