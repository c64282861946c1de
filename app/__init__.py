"""aigateway: a GitHub App that reviews pull requests with two models and acts by an autonomy matrix."""

__version__ = "0.1.0"
