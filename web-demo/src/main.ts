import "./styles.css";
import { App } from "./app.js";

const root = document.getElementById("app");
if (!root) throw new Error("#app is missing from index.html");
new App(root).start();
