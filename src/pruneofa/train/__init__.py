"""Training stages and the pipeline that runs a recipe's stages in order."""
