// response_mode=form_post: the page's form carries the code to the client's
// redirect URI; a script of this origin posts it (the CSP allows no inline script).
document.getElementById("form-post").submit();
