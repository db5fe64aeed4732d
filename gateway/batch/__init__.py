"""Image work sent through OpenAI's Batch API (issue 24, being built): the input file's lines
checked and estimated as the online endpoints would check and estimate them."""
