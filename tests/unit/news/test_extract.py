"""extract_page and page_metadata on a real-looking article page and on pages without text."""

import pytest

from lc_async_pipelines.errors import FetchError
from lc_async_pipelines.news._extract import extract_page, page_metadata

URL = "https://news.example/2024/03/harbour-reopens.html"

PARAGRAPHS = [
    "The harbour at Port Elwyn reopened on Thursday after three weeks of repairs to the sea wall "
    "that storms had breached in February, the town council said.",
    "Fishing boats queued from dawn to unload their first full catch since the closure, and the "
    "harbour master, Ines Calder, said traffic should be back to normal by the weekend.",
    "Repairs cost £2.4m, paid mostly from an emergency fund, and engineers will return in the "
    "summer to raise the wall by another half metre.",
    "\u201cWe were lucky nobody was hurt,\u201d said Ms Calder. \u201cNow we need the wall to hold "
    "for the next twenty years, not the next two.\u201d",
]

PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Harbour reopens after sea wall repairs | Coast Gazette</title>
<meta name="author" content="Morgan Ellis">
<meta property="article:published_time" content="2024-03-07T09:15:00+00:00">
<meta property="og:site_name" content="Coast Gazette">
<meta property="og:title" content="Harbour reopens after sea wall repairs">
</head><body>
<header><nav><a href="/">Home</a> <a href="/sport">Sport</a> <a href="/weather">Weather</a></nav></header>
<aside class="sidebar"><h3>Most read</h3><ul><li><a href="/a">Council tax rises again</a></li></ul></aside>
<main><article>
<h1>Harbour reopens after sea wall repairs</h1>
<p class="byline">By Morgan Ellis</p>
{"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
</article>
<section id="comments"><h2>Comments</h2><div class="comment"><p>First! Great news.</p></div></section>
</main>
<footer><p>Cookie settings. Subscribe to our newsletter. © Coast Gazette 2024</p></footer>
</body></html>"""


def test_extract_page_reads_text_and_metadata():
    page = extract_page(PAGE.encode("utf-8"), URL)
    assert page.url == URL
    assert page.title == "Harbour reopens after sea wall repairs"
    assert page.author == "Morgan Ellis"
    assert page.published == "2024-03-07"
    assert page.site == "Coast Gazette"
    for paragraph in PARAGRAPHS:
        assert paragraph in page.text
    for boilerplate in ("Most read", "Cookie settings", "First! Great news", "Weather"):
        assert boilerplate not in page.text
    assert not page.text.startswith(page.title)  # the headline is carried as the title


def test_extract_page_detects_the_encoding_of_bytes():
    latin = PAGE.replace('charset="utf-8"', 'charset="iso-8859-1"').replace("\u201c", '"')
    latin = latin.replace("\u201d", '"')
    page = extract_page(latin.encode("iso-8859-1"), URL)
    assert "Repairs cost £2.4m" in page.text


@pytest.mark.parametrize(
    "html",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>Empty</title></head><body></body></html>",
        "<!DOCTYPE html><html><head><style>p {}</style></head><body><script>x()</script></body></html>",
    ],
)
def test_a_page_without_text_is_a_fetch_error(html):
    with pytest.raises(FetchError) as caught:
        extract_page(html, URL)
    assert caught.value.cause == "no article text in the page"
    assert caught.value.url == URL


def test_page_metadata():
    assert page_metadata(PAGE, URL) == {
        "title": "Harbour reopens after sea wall repairs",
        "author": "Morgan Ellis",
        "published": "2024-03-07",
        "site": "Coast Gazette",
    }


def test_page_metadata_of_nothing_is_all_none():
    empty = {"title": None, "author": None, "published": None, "site": None}
    assert page_metadata(b"", URL) == empty
    assert page_metadata(b"\x00\x01 binary", URL)["author"] is None


UNDATED = """<!DOCTYPE html><html><head><title>Mint factory to open</title></head><body>
<article><h1>Mint factory to open</h1>
<p>The Aubermint company, founded in 1997, said on Tuesday it would open a new factory in the
north, bringing two hundred jobs to a town that lost its mill in 2001.</p>
<p>Workers welcomed the plan, though some said the wages offered were lower than at the old mill.</p>
<p>The company expects the factory to open next spring if the council agrees to the plans.</p>
</article><footer>Copyright 1997-2001 Example News</footer></body></html>"""


@pytest.mark.parametrize("url", ["https://news.example/mint.html", "https://news.example/news/42"])
def test_a_page_that_states_no_date_has_none(url):
    # htmldate's extensive search made 2001-01-01 of "lost its mill in 2001"
    assert extract_page(UNDATED, url).published is None
    assert page_metadata(UNDATED, url)["published"] is None


def test_a_date_the_markup_or_address_states_is_kept():
    timed = UNDATED.replace("<h1>", '<time datetime="2023-07-08">8 July 2023</time><h1>')
    assert extract_page(timed, "https://news.example/mint.html").published == "2023-07-08"
    dated_url = "https://news.example/2019/05/03/mint.html"
    assert extract_page(UNDATED, dated_url).published == "2019-05-03"
    assert page_metadata(UNDATED, dated_url)["published"] == "2019-05-03"
