"""Query understanding: dates, kinds, lengths and places read out of a plain query.

Light on purpose (re, datetime, unicodedata): it runs on every cold `searchengine search`.
dateparser is imported only for a day written out ("3 March 2021").
"""

from searchengine.understand.places import KnownPlaces
from searchengine.understand.reading import Reading, Wanted, literal, read_query
from searchengine.understand.words import fold

__all__ = ["KnownPlaces", "Reading", "Wanted", "fold", "literal", "read_query"]
