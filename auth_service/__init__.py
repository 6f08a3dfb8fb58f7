"""woes-auth: the credential service of the Woes platform."""

__version__ = "0.1.0"
