"""masksearch.recipes"""
