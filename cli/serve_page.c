/*
 * serve_page.c - the page of `mnist serve` (GET /): web/index.html, assembled into the binary
 * with the assembler's .incbin, so the server reads no file at run time and the page stays a
 * real file in the repository, edited and viewed as one. The Makefile makes this object depend
 * on web/index.html. A NUL follows the bytes; serve_page_html_len does not count it.
 */
#include "serve.h"

__asm__(".section .rodata\n"
        ".global serve_page_html\n"
        ".hidden serve_page_html\n"
        ".type serve_page_html, @object\n"
        ".balign 16\n"
        "serve_page_html:\n"
        ".incbin \"web/index.html\"\n"
        ".byte 0\n"
        "serve_page_html_end:\n"
        ".balign 8\n"
        ".global serve_page_html_len\n"
        ".hidden serve_page_html_len\n"
        ".type serve_page_html_len, @object\n"
        "serve_page_html_len:\n"
        ".quad serve_page_html_end - serve_page_html - 1\n"
        ".previous\n");
