"""Generation: everything between gathered sources and a stored, validated generation.

prompt          chat messages from `prompts/*.j2` (sources fenced as data)
schema          the canonical schemas, specialised per unit and adapted per endpoint dialect
selection       small models choose (levels, ratings, passages); code composes the data
selection_text  what code writes where a small model only chose: verdict reasoning, FAQ
gates           content gates: what a schema-valid answer must also get right
validate        parse, schema, gates: the problems a re-ask names
consensus       several samples of one unit, their median and spread
judge           the optional grounding judge's call
job             one unit of generation prepared: messages, schema, cache key
run             the loop: cache, call, parse, validate, re-ask, store
"""
