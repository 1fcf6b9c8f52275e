"""masksearch.env"""
