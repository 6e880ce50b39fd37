"""Extractors: media -> feature rows. The contract (``base``), the registry of built-ins
(``registry``), processing one media with several extractors (``process``), and one subpackage
per modality: ``visual``, ``audio``, ``text``."""
