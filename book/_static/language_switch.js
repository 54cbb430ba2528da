// The link to the same page in the book's other language, at the top of every page. The English
// book is at the site's root and the Chinese one in zh/ (autograder/translated_book.py); the page's
// <html lang> says which one this is, Sphinx's data-content_root where the book's root is. Works
// from file:// as well as from a server.
document.addEventListener("DOMContentLoaded", () => {
  const root = new URL(document.documentElement.dataset.content_root || "./", window.location.href);
  const page = window.location.href.slice(root.href.length);
  const chinese = document.documentElement.lang.toLowerCase().startsWith("zh");
  const other = chinese ? new URL("../", root).href + page : root.href + "zh/" + page;
  const link = document.createElement("a");
  link.className = "language-switch";
  link.href = other;
  link.lang = chinese ? "en" : "zh-CN";
  link.hreflang = link.lang;
  link.textContent = chinese ? "English" : "中文";
  link.title = chinese ? "Read this page in English" : "阅读本页的中文版";
  const where = document.querySelector(".article-header-buttons") || document.querySelector(".bd-header") || document.body;
  where.prepend(link);
});
