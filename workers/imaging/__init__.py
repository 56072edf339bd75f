"""Pure image-generation code: prompt parsing, infotext, samplers, pipelines. Never imports Django."""
