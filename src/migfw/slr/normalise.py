"""Field normalisation shared by every importer and by deduplication.

Every function takes the raw text a database wrote and returns a canonical string
(never None): exports disagree on DOI prefixes, page ranges, author-name order and
LaTeX escapes, and matching only works once those differences are gone.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

__all__ = [
    "VENUE_STOP",
    "author_keys",
    "clean_text",
    "format_author",
    "normalise_doi",
    "normalise_language",
    "normalise_pages",
    "parse_authors",
    "parse_year",
    "split_pages",
    "strip_accents",
    "title_key",
    "title_variants",
    "venue_abbreviation_match",
    "venue_tokens",
]

# ---------------------------------------------------------------- text / LaTeX

# LaTeX accent commands -> Unicode combining marks (applied to the following letter).
_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "c": "\u0327",
    "k": "\u0328",
    "r": "\u030a",
    "d": "\u0323",
    "b": "\u0331",
}
# Letter-like macros that stand for one character.
_SYMBOLS = {
    "ss": "ß",
    "o": "ø",
    "O": "Ø",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "aa": "å",
    "AA": "Å",
    "l": "ł",
    "L": "Ł",
    "i": "ı",
    "j": "ȷ",
    "textendash": "–",
    "textemdash": "—",
    "textquoteright": "’",
    "textquoteleft": "‘",
    "textregistered": "®",
    "texttrademark": "™",
    "copyright": "©",
    "dag": "†",
    "S": "§",
    "P": "¶",
    "textbackslash": "\\",
    "textasciitilde": "~",
    "textless": "<",
    "textgreater": ">",
}
_ESCAPED = {"&": "&", "%": "%", "$": "$", "_": "_", "#": "#", "{": "{", "}": "}", " ": " "}

_ACCENT_RE = re.compile(
    r"""\\(?P<cmd>['`^"~=.]|[uvHckrdb](?=[\s{]))\s*(?:\{\s*(?P<braced>\\?[A-Za-z]?)\s*\}|(?P<bare>\\?[A-Za-z]))"""
)
_SYMBOL_RE = re.compile(
    r"\\(" + "|".join(sorted(_SYMBOLS, key=len, reverse=True)) + r")(?![A-Za-z])\s?"
)
_FORMAT_CMD_RE = re.compile(
    r"\\(?:textit|textbf|emph|textsc|textrm|texttt|textsf|textup|mathrm|mathit|mbox|url|text|it|bf|em|sc|rm|tt)\b\s*"
)
_HTML_TAG_RE = re.compile(
    r"</?(?:i|b|u|em|strong|sub|sup|p|br|span|scp|inf|mml:[a-z]+)\b[^<>]*>", re.I
)
_WS_RE = re.compile(r"\s+")


def _latex_to_unicode(text: str) -> str:
    if "\\" not in text and "{" not in text and "--" not in text and "~" not in text:
        return text

    def accent(match: re.Match) -> str:
        letter = match.group("braced") if match.group("braced") is not None else match.group("bare")
        letter = letter or ""
        if letter in ("\\i", "\\j"):  # dotless i/j carry the accent in LaTeX
            letter = letter[1]
        return unicodedata.normalize("NFC", letter + _ACCENTS[match.group("cmd")])

    text = _ACCENT_RE.sub(accent, text)
    text = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group(1)], text)
    text = _FORMAT_CMD_RE.sub("", text)
    text = re.sub(r"\\([&%$_#{} ])", lambda m: _ESCAPED[m.group(1)], text)
    text = text.replace("---", "—").replace("--", "–")
    # A bare ~ is a LaTeX non-breaking space; braces only protect case.
    text = re.sub(r"(?<!\\)~", " ", text)
    text = re.sub(r"(?<!\\)[{}]", "", text)
    return text


def clean_text(value: object) -> str:
    """LaTeX accents/braces and HTML entities/markup to Unicode; whitespace collapsed."""
    if value is None:
        return ""
    text = str(value)
    if text.lower() in ("nan", "<na>", "none", "null"):
        return ""
    text = text.replace("\u00a0", " ")
    text = _latex_to_unicode(text)
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _HTML_TAG_RE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return _WS_RE.sub(" ", text).strip()


def strip_accents(text: str) -> str:
    """Drop combining marks and fold letters NFKD cannot split (ø, ł, ß...)."""
    if text.isascii():  # most fields: nothing to drop or fold (NFKD leaves ASCII as is)
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.translate(_FOLD)


_FOLD = str.maketrans(
    {
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "đ": "d",
        "Đ": "D",
        "ı": "i",
        "þ": "th",
    }
)


def title_key(title: object) -> str:
    """Matching key: casefolded, accents stripped, punctuation removed, single spaces."""
    text = strip_accents(clean_text(title)).casefold()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return _WS_RE.sub(" ", text).strip()


# ---------------------------------------------------------------- DOI / pages / year

_DOI_RE = re.compile(r"10\.\d{3,9}/[^\s\"]+", re.I)


def normalise_doi(value: object) -> str:
    """'https://doi.org/10.1000/ABC.' -> '10.1000/abc'; '' when no DOI is present."""
    text = clean_text(value)
    if not text:
        return ""
    if re.search(r"%[0-9a-f]{2}", text, re.I):  # URL-encoded: '%2F', '%28' for '('
        text = unquote(text)
    match = _DOI_RE.search(text)
    if not match:
        return ""
    doi = match.group(0).rstrip(".,;:)]}'")
    # An unbalanced "(" kept from the DOI's own text means we cut a ")" we needed.
    if doi.count("(") > doi.count(")") and match.group(0).rstrip(".,;:]}'").endswith(")"):
        doi += ")"
    return doi.lower()


def _int_like(text: str) -> str:
    # pandas-written exports store numbers as floats ("307.0").
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


# Every dash a page range is printed with: ASCII, en and em dash, and the Unicode hyphens
# (U+2010, U+2011), figure dash and minus sign that Wiley/Cochrane CENTRAL exports use
# ("401‐403", "S568‐"). Folded to "-", so one range has one spelling.
PAGE_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_PAGE_DASH_RE = re.compile(rf"\s*[{PAGE_DASHES}]+\s*")


def split_pages(pages: str, maxsplit: int = 0) -> list[str]:
    """A page range cut at its dashes, whichever dash ('401‐403' -> ['401', '403'])."""
    return _PAGE_DASH_RE.split(pages, maxsplit=maxsplit)


def normalise_pages(pages: object, end: object = "") -> str:
    """'123--30' -> '123-130'; ('307.0', '326.0') -> '307-326'; 'e0815'/'Cd002273' kept."""
    start = _int_like(clean_text(pages))
    stop = _int_like(clean_text(end))
    start = re.sub(r"^(?:pp?\.?\s*)", "", start, flags=re.I)
    if stop and start and not _PAGE_DASH_RE.search(start):
        start = f"{start}-{stop}"
    elif stop and not start:
        start = stop
    if not start:
        return ""
    parts = split_pages(start)
    if len(parts) == 2 and parts[0] and parts[1]:
        first, last = parts
        # Abbreviated end page ("1781-802"): borrow the leading digits of the start.
        if first.isdigit() and last.isdigit() and len(last) < len(first) and int(last) < int(first):
            last = first[: len(first) - len(last)] + last
        if first == last:
            return first
        return f"{first}-{last}"
    # "S568‐": a start page and a dash with no end page is the start page alone.
    return _PAGE_DASH_RE.sub("-", start).strip(" -")


_YEAR_RE = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")


def parse_year(value: object) -> int | None:
    """First plausible 4-digit year in the text ('2016/09//' -> 2016), else None."""
    text = clean_text(value)
    match = _YEAR_RE.search(text)
    return int(match.group(1)) if match else None


_LANGUAGES = {
    "en": "English", "eng": "English", "ger": "German", "deu": "German", "de": "German",
    "fre": "French", "fra": "French", "fr": "French", "spa": "Spanish", "es": "Spanish",
    "por": "Portuguese", "pt": "Portuguese", "ita": "Italian", "it": "Italian",
    "chi": "Chinese", "zho": "Chinese", "zh": "Chinese", "jpn": "Japanese", "ja": "Japanese",
    "rus": "Russian", "ru": "Russian", "kor": "Korean", "ko": "Korean", "dut": "Dutch",
    "nld": "Dutch", "nl": "Dutch", "pol": "Polish", "pl": "Polish", "tur": "Turkish",
    "tr": "Turkish", "swe": "Swedish", "sv": "Swedish", "ara": "Arabic", "ar": "Arabic",
    "per": "Persian", "fas": "Persian", "fa": "Persian", "cze": "Czech", "ces": "Czech",
    "cs": "Czech", "gre": "Greek", "ell": "Greek", "el": "Greek",
}  # fmt: skip


def normalise_language(value: object) -> str:
    """'eng'/'EN'/'english' -> 'English' (ISO 639 codes and names; '; ' between several)."""
    names: list[str] = []
    for part in re.split(r"\s*[;,/|]\s*", clean_text(value)):
        if not part:
            continue
        name = _LANGUAGES.get(part.lower(), part[:1].upper() + part[1:].lower())
        if name not in names:
            names.append(name)
    return "; ".join(names)


# ---------------------------------------------------------------- authors

_PARTICLES = {
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la",
    "le", "ter", "ten", "ul", "al", "el", "bin", "ibn", "zu", "y", "st", "st.",
}  # fmt: skip
# Capitalised particles that (in Western names) start a surname; "Le" is left out because
# it is a common Vietnamese middle name.
_CAP_PARTICLES = {"Van", "Von", "De", "Del", "Della", "Di", "Da", "Der", "Den", "Dos", "Du"}
_INITIALS_RE = re.compile(r"^(?:[A-Z]\.?[\s-]*){1,4}$")
_NAME_PREFIXES = ("Mc", "Mac", "De", "Di", "Da", "La", "Le", "Van", "Von", "Du", "O'", "D'")


def _is_initials(token: str) -> bool:
    token = token.strip()
    return bool(token) and bool(_INITIALS_RE.match(token))


def _dotted(initials: str) -> str:
    """'GQ' -> 'G. Q.'; 'J.C.' stays; 'P' -> 'P.'"""
    initials = initials.strip()
    if re.fullmatch(r"[A-Z]{1,4}", initials):
        return " ".join(f"{ch}." for ch in initials)
    if re.fullmatch(r"[A-Z]", initials):
        return initials + "."
    return initials


def format_author(name: str) -> str:
    """One personal name in any order -> 'Last, First' (or 'Last, F.')."""
    # Parenthesised extras are never part of the name: WoS e-mails, Scopus author IDs.
    name = re.sub(r"\s*\([^()]*\)", "", clean_text(name)).strip(" ,;")
    if not name.strip("."):
        return ""
    if "," in name:
        last, _, first = name.partition(",")
        last, first = last.strip(), first.strip()
        # "Smith, J., Jr." style suffixes are kept with the first name.
        if not first:
            return last
        return f"{last}, {_dotted(first) if _is_initials(first) else first}"
    # "G.Kumaravelan" (IEEE): an initial glued to the surname.
    tokens = re.sub(r"\b([A-Z]\.)(?=[A-Z][a-z])", r"\1 ", name).split()
    if len(tokens) == 1:
        return tokens[0]
    # "Liu F." / "Phillips J.C." / "O'Donnell C. P." (Scopus, PubMed): surname first.
    if not _is_initials(tokens[0]) and all(_is_initials(t) for t in tokens[1:]):
        first = " ".join(tokens[1:])
        return f"{tokens[0]}, {_dotted(first) if ' ' not in first else first}"
    # MEDLINE "Huang Chua CE" / "de Vaujany FX" / "Nunamaker Jr JF": a multi-word surname
    # then undotted capital initials.
    if (
        len(tokens) >= 3
        and re.fullmatch(r"[A-Z]{1,3}", tokens[-1])
        and not any(_is_initials(t) for t in tokens[:-1])
    ):
        return f"{' '.join(tokens[:-1])}, {_dotted(tokens[-1])}"
    # "P. Kogge", "Vivek K. Pallipuram", "David De Roure": given names first.
    start = len(tokens) - 1
    for i in range(1, len(tokens) - 1):
        if tokens[i].lower() in _PARTICLES and (tokens[i].islower() or tokens[i] in _CAP_PARTICLES):
            start = i
            break
    last = " ".join(tokens[start:])
    first = " ".join(tokens[:start])
    return f"{last}, {first}"


def _split_glued(text: str) -> list[str]:
    """Split names glued together with no separator (Springer CSV, some CSV dumps).

    'Vivek K. PallipuramMohammad Bhuiyan' -> two names (lower->Upper boundary);
    'Tan A.Schulze A.O'Donnell C. P.Davis P. G.' -> four (initial '.' then a word).
    Mc/Mac/De... prefixes ('McDonald', 'DeWitt') are not split.
    """
    cuts: list[int] = []
    for match in re.finditer(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ])|(?<=\.)(?=[A-ZÀ-Þ][a-zà-ÿ'])", text):
        pos = match.start()
        word_start = (
            max(text.rfind(" ", 0, pos), text.rfind(".", 0, pos), text.rfind("-", 0, pos)) + 1
        )
        prefix = text[word_start:pos]
        if text[pos - 1] != "." and prefix in _NAME_PREFIXES:
            continue
        cuts.append(pos)
    if not cuts:
        return [text]
    pieces, prev = [], 0
    for pos in cuts:
        pieces.append(text[prev:pos])
        prev = pos
    pieces.append(text[prev:])
    # Every real name has a space ("First Last" / "Last I."): a one-word piece is the
    # tail of an inner-capital surname ("VanderBilt", "FitzGerald"), so glue it back.
    names: list[str] = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if names and (" " not in piece or " " not in names[-1]):
            names[-1] += piece
        else:
            names.append(piece)
    return names


def _looks_like_surname_initials(piece: str) -> bool:
    tokens = piece.split()
    return (
        len(tokens) >= 2
        and not _is_initials(tokens[0])
        and all(_is_initials(t) for t in tokens[1:])
    )


def _fully_braced(text: str) -> bool:
    """'{Acme Corp}' -> True; '{A} and {B}' -> False (the first brace closes early)."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and i < len(text) - 1:
            return False
    return depth == 0


def _split_bibtex_and(text: str) -> list[str]:
    pieces, depth, start = [], 0, 0
    for match in re.finditer(r"[{}]|\s+and\s+", text):
        token = match.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        elif depth == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _two_names(first: str, second: str) -> bool:
    """Is 'A, B' two people ('Phillips J.C., Braun R.' / 'Tam Nguyen, Zhao Ren') rather
    than one 'Last, First' ('Van Kleek, Max' / 'Zhang, GQ' / 'De Roure, David J.')?"""
    if _looks_like_surname_initials(first) and _looks_like_surname_initials(second):
        return True
    tokens = second.split()
    # a second "First Last" name ends in a real word, a given-name part in initials
    return len(first.split()) >= 2 and len(tokens) >= 2 and not _is_initials(tokens[-1])


def parse_authors(value: object) -> list[str]:
    """Split an author field of any database into a list of 'Last, First' names.

    Accepts a list (RIS AU lines), 'A and B' (BibTeX), 'A; B' (Scopus/IEEE/WoS/Lens),
    'A|B' (OpenAlex), 'Last I., Last I.' (old Scopus), 'First Last, First Last'
    (hand-made CSVs) and Springer's glued names.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        names: list[str] = []
        for item in value:
            names.extend(
                parse_authors(item)
                if re.search(r";| and |\|", str(item))
                else [format_author(str(item))]
            )
        return [n for n in names if n]
    raw = str(value)
    if _fully_braced(raw):
        return [clean_text(raw)]  # BibTeX "{World Health Organization}": keep as is
    if re.search(r"\s+and\s+", raw) and ";" not in raw:
        # BibTeX: split on "and" outside braces; a braced piece is a corporate name.
        return [
            clean_text(piece) if _fully_braced(piece) else format_author(piece)
            for piece in _split_bibtex_and(raw)
            if clean_text(piece)
        ]
    text = clean_text(value)
    if not text:
        return []
    if ";" in text:
        pieces = text.split(";")
    elif "|" in text:
        pieces = text.split("|")
    elif "," in text:
        pieces = [p.strip() for p in text.split(",")]
        # "Zhang, GQ" / "Smith, John" is one name; a list needs 3+ commas-pieces or
        # pieces that are each a full name ("Last I." or "First Last").
        if len(pieces) == 2 and not _two_names(pieces[0], pieces[1]):
            pieces = [text]
        elif all(_looks_like_surname_initials(p) or len(p.split()) >= 2 for p in pieces if p):
            pass
        elif len(pieces) % 2 == 0 and all(
            len(pieces[i].split()) == 1 for i in range(0, len(pieces), 2)
        ):
            # "Smith, J, Jones, K": surname/given pairs.
            pieces = [f"{pieces[i]}, {pieces[i + 1]}" for i in range(0, len(pieces), 2)]
        else:
            pieces = [text]
    else:
        pieces = [text]
    names = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        for part in _split_glued(piece) if "," not in piece else [piece]:
            formatted = format_author(part)
            if formatted:
                names.append(formatted)
    return names


def author_keys(value: object) -> list[str]:
    """Normalised surnames (accents stripped, casefolded, letters only) in author order."""
    if isinstance(value, str) and "; " in value and all("," in n for n in value.split("; ")):
        names = value.split("; ")  # already canonical ("Last, F.; ..."): don't re-parse
    else:
        names = parse_authors(value)
    keys = []
    for name in names:
        last = name.split(",", 1)[0]
        key = re.sub(r"[^a-z]", "", strip_accents(last).casefold())
        if key:
            keys.append(key)
    return keys


# ---------------------------------------------------------------- venues and titles

# Words ISO 4 / NLM abbreviations drop ("Journal of the American ..." -> "J Am ...").
VENUE_STOP = frozenset(
    "an and the of for in on at to with by from de des du la le les der die das und "
    "et del della di da dos das fur für".split()
)


def venue_tokens(venue: object) -> list[str]:
    """Folded venue words without articles/prepositions: 'J. Am. Med. Assoc.' ->
    ['j', 'am', 'med', 'assoc']."""
    text = strip_accents(clean_text(venue)).casefold().replace("&", " ")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return [w for w in words if w not in VENUE_STOP]


def _abbreviates(short: str, full: str) -> bool:
    """ISO 4 / NLM word abbreviation: same first letter, the letters of `short` appear in
    `full` in order ('intl' ~ 'international', 'natl' ~ 'national', 'j' ~ 'journal')."""
    if short == full:
        return True
    if not short or not full or short[0] != full[0] or len(short) > len(full):
        return False
    pos = 0
    for ch in short:
        pos = full.find(ch, pos) + 1
        if pos == 0:
            return False
    return True


def venue_abbreviation_match(a: list[str], b: list[str]) -> bool:
    """Is one venue (word tokens) an abbreviation of the other?

    Word by word, in order: each word of the shorter form abbreviates the next word of the
    longer one ('J Clin Epidemiol' ~ 'Journal of Clinical Epidemiology'); or the shorter
    form is one acronym of the longer one's initials ('JAMA', 'BMJ', 'ICIS'), the longer
    form then allowed to carry extra trailing words (a conference's theme or year).
    """
    if not a or not b:
        return False
    for acro, other in ((a, b), (b, a)):
        # An acronym first word, the other side spelled out (plus a theme/year tail).
        initials = "".join(w[0] for w in other)
        if len(acro[0]) >= 3 and len(other) >= 3 and acro[0] == initials:
            return True
        # 'HICSS' ~ 'Proceedings of the Hawaii International Conference on System Sciences'
        if len(acro[0]) >= 4 and acro[0] in initials:
            return True
    short, full = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) != len(full):
        return False
    return all(_abbreviates(s, f) or _abbreviates(f, s) for s, f in zip(short, full, strict=True))


_BRACKET_RE = re.compile(r"^(?P<main>.*?)\s*\[(?P<alt>[^\[\]]+)\]\s*\.?\s*$")


def title_variants(title: object) -> list[str]:
    """Title keys a record may be known by: the whole title and, when one is given in
    brackets (a translated title: 'English title [Original title]' from Scopus/WoS, or
    '[English title]' from MEDLINE/Embase), the part outside and the part inside the
    brackets. Short bracketed notes ('[careers]', '[letter]') are not titles."""
    text = clean_text(title)
    keys = [title_key(text)]
    match = _BRACKET_RE.match(text)
    if match:
        for part, words in ((match.group("main"), 1), (match.group("alt"), 3)):
            key = title_key(part)
            if len(key.split()) >= words and key not in keys:
                keys.append(key)
    return [k for k in keys if k]
