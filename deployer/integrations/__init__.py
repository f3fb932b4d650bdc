"""Adapters that let other tools drive deployer (loaded only by those tools, never by ``import
deployer``)."""
